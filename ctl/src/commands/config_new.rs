//! `cairnctl config new <file> --roles os:reader [--crt-ttl 24h]`: a client
//! config for someone else, with a short-lived certificate the node mints
//! from the OS CA (GenerateClientConfiguration, admin only), so an admin
//! can hand out read-only (or operator) access without handing out the CA
//! or an admin key. The new file has the current context's endpoints and
//! nodes, is written 0600 and is not overwritten without --force.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use api::machine::{GenerateClientConfigurationRequest, GenerateClientConfigurationResponse};
use config::client::{ClientConfig, Context};
use config::pki::{Role, MAX_ROLE_CERT_TTL, MIN_ROLE_CERT_TTL};

use super::apply_config::parse_duration;
use crate::global::GlobalArgs;
use crate::session::Session;

#[derive(clap::Args, Debug)]
pub struct NewArgs {
    /// Where to write the new client config.
    pub file: PathBuf,
    /// The roles of the new certificate (os:admin, os:operator, os:reader;
    /// it carries the strongest one given), comma separated.
    #[arg(long, required = true, value_delimiter = ',', value_parser = parse_role)]
    pub roles: Vec<String>,
    /// How long the certificate is valid (60s to 365d; the default is
    /// config::pki::DEFAULT_ROLE_CERT_TTL's).
    #[arg(long, value_name = "DURATION", value_parser = parse_ttl, default_value = "24h")]
    pub crt_ttl: Duration,
    /// Who the certificate is for (its Common Name).
    #[arg(long, default_value = "cairnctl")]
    pub name: String,
    /// Overwrite the file if it exists.
    #[arg(long)]
    pub force: bool,
}

fn parse_role(s: &str) -> Result<String, String> {
    let s = s.trim();
    Role::from_organization(s)
        .map(|r| r.organization().to_string())
        .ok_or_else(|| format!("{s:?} is not a role: use os:admin, os:operator or os:reader"))
}

fn parse_ttl(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < MIN_ROLE_CERT_TTL || d > MAX_ROLE_CERT_TTL {
        return Err(format!(
            "{s}: a certificate may live from {} s to {} days",
            MIN_ROLE_CERT_TTL.as_secs(),
            MAX_ROLE_CERT_TTL.as_secs() / 86400
        ));
    }
    Ok(d)
}

/// The request for `args`.
pub fn request(args: &NewArgs) -> GenerateClientConfigurationRequest {
    GenerateClientConfigurationRequest {
        roles: args.roles.clone(),
        crt_ttl: Some(prost_types::Duration {
            seconds: args.crt_ttl.as_secs() as i64,
            nanos: 0,
        }),
        name: args.name.clone(),
    }
}

/// The new client config: one context named `name` with the endpoints and
/// nodes of `like`, and the CA, certificate and key the node sent.
pub fn client_config(
    name: &str,
    like: &Context,
    answer: &GenerateClientConfigurationResponse,
) -> anyhow::Result<ClientConfig> {
    let bad = |what: &str, e: String| anyhow::anyhow!("the node sent a bad {what}: {e}");
    let context = Context {
        endpoints: like.endpoints.clone(),
        nodes: like.nodes.clone(),
        ca: answer.ca.parse().map_err(|e| bad("CA certificate", e))?,
        crt: answer.crt.parse().map_err(|e| bad("certificate", e))?,
        key: answer.key.parse().map_err(|e| bad("key", e))?,
    };
    if !config::pki::key_matches(&context.crt, &context.key) {
        anyhow::bail!("the node sent a key that does not belong to its certificate");
    }
    Ok(ClientConfig {
        context: Some(name.to_string()),
        contexts: [(name.to_string(), context)].into(),
    })
}

/// The role and expiry the certificate says, for people.
pub fn describe(config: &ClientConfig) -> String {
    let Some(ctx) = config.contexts.values().next() else {
        return String::new();
    };
    match x509_parser::parse_x509_certificate(ctx.crt.der()) {
        Ok((_, cert)) => {
            let roles: Vec<&str> = cert
                .subject()
                .iter_organization()
                .filter_map(|o| o.as_str().ok())
                .collect();
            format!(
                "role {}, valid until {}",
                roles.join(","),
                cert.validity().not_after
            )
        }
        Err(_) => String::new(),
    }
}

/// Writes `config` to `path` with mode 0600 (refused when it exists,
/// unless `force`).
pub fn write(config: &ClientConfig, path: &Path, force: bool) -> anyhow::Result<()> {
    config
        .save(path, force)
        .with_context(|| format!("writing {}", path.display()))
}

pub async fn run(args: NewArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    if global.insecure {
        anyhow::bail!("config new needs an admin cairnconfig, not --insecure");
    }
    if args.file.exists() && !args.force {
        anyhow::bail!(
            "{} already exists (use --force to overwrite)",
            args.file.display()
        );
    }
    // The context the new file copies its endpoints and nodes from.
    let path = global.client_config_path()?;
    let current = ClientConfig::load(&path)?;
    let (name, like) = current.context(global.context.as_deref())?;
    let (name, like) = (name.to_string(), like.clone());

    let session = Session::open(global).await?;
    let client = match session.clients.iter().find_map(|c| c.as_ref().ok()) {
        Some(c) => c.clone(),
        None => match session.clients.first() {
            Some(Err(e)) => anyhow::bail!("{}: {}", e.node, e.message),
            _ => anyhow::bail!("no node to ask"),
        },
    };
    let answer = client
        .call(
            "GenerateClientConfiguration",
            request(&args),
            |mut m, r| async move { m.generate_client_configuration(r).await },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e}", client.node))?;
    let new = client_config(&name, &like, &answer)?;
    write(&new, &args.file, args.force)?;
    eprintln!(
        "wrote {} (mode 0600): context {name}, {}, from {}",
        args.file.display(),
        describe(&new),
        client.node
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use std::os::unix::fs::PermissionsExt as _;
    use std::task::{Context as TaskContext, Poll};

    use api::machine::machine_service_client::MachineServiceClient;
    use tonic::codegen::{http, BoxFuture, Service};

    /// A node's side of the call: what machined will do, with the same
    /// signing function (config::pki::issue_role_certificate).
    #[derive(Clone)]
    struct Node(config::pki::CertifiedKey);

    impl tonic::server::NamedService for Node {
        const NAME: &'static str = "cairn.machine.v1.MachineService";
    }

    struct Mint(config::pki::CertifiedKey);

    impl tonic::server::UnaryService<GenerateClientConfigurationRequest> for Mint {
        type Response = GenerateClientConfigurationResponse;
        type Future = BoxFuture<tonic::Response<Self::Response>, tonic::Status>;
        fn call(
            &mut self,
            req: tonic::Request<GenerateClientConfigurationRequest>,
        ) -> Self::Future {
            let ca = self.0.clone();
            Box::pin(async move {
                let r = req.into_inner();
                let ttl = r
                    .crt_ttl
                    .and_then(|d| Duration::try_from(d).ok())
                    .unwrap_or(config::pki::DEFAULT_ROLE_CERT_TTL);
                let c = config::pki::issue_role_certificate(&ca, &r.name, &r.roles, ttl)
                    .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
                Ok(tonic::Response::new(GenerateClientConfigurationResponse {
                    ca: ca.crt.pem().to_string(),
                    crt: c.crt.pem().to_string(),
                    key: c.key.pem().to_string(),
                }))
            })
        }
    }

    impl Service<http::Request<tonic::body::Body>> for Node {
        type Response = http::Response<tonic::body::Body>;
        type Error = Infallible;
        type Future = BoxFuture<Self::Response, Self::Error>;
        fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
            let ca = self.0.clone();
            Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
                Ok(grpc.unary(Mint(ca), req).await)
            })
        }
    }

    fn args(roles: &[&str], ttl: &str) -> NewArgs {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            a: NewArgs,
        }
        let mut argv = vec!["x", "out", "--crt-ttl", ttl];
        for r in roles {
            argv.extend(["--roles", r]);
        }
        Cli::try_parse_from(argv).unwrap().a
    }

    #[test]
    fn roles_and_lifetimes_are_checked_before_asking() {
        use clap::Parser;
        #[derive(clap::Parser, Debug)]
        struct Cli {
            #[command(flatten)]
            a: NewArgs,
        }
        let e = Cli::try_parse_from(["x", "f", "--roles", "os:impersonator"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not a role"), "{e}");
        let e = Cli::try_parse_from(["x", "f", "--roles", "os:reader", "--crt-ttl", "400d"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("from 60 s to 365 days"), "{e}");
        assert!(
            Cli::try_parse_from(["x", "f"]).is_err(),
            "--roles is required"
        );
        let a = args(&["os:reader,os:operator"], "2h");
        assert_eq!(a.roles, ["os:reader", "os:operator"]);
        assert_eq!(a.crt_ttl, Duration::from_secs(7200));
        let default = Cli::try_parse_from(["x", "f", "--roles", "os:reader"])
            .unwrap()
            .a;
        assert_eq!(default.crt_ttl, config::pki::DEFAULT_ROLE_CERT_TTL);
    }

    /// The call and the file, against a node that signs with the OS CA.
    #[tokio::test]
    async fn mints_a_reader_config_written_0600_and_never_overwritten() {
        let secrets = config::generate::generate_secrets().unwrap();
        let os_ca = secrets.certs.os.clone();
        let input = config::generate::GenerateInput::new(
            "lab".parse().unwrap(),
            "https://10.5.0.2:6443".parse().unwrap(),
            secrets,
        );
        let admin_config = config::generate::generate_configs(&input).unwrap().2;
        let (name, like) = admin_config.context(None).unwrap();

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(Node(os_ca.clone()))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let mut c = MachineServiceClient::connect(format!("http://127.0.0.1:{port}"))
            .await
            .unwrap();
        let answer = c
            .generate_client_configuration(request(&args(&["os:reader"], "24h")))
            .await
            .unwrap()
            .into_inner();
        let new = client_config(name, like, &answer).unwrap();
        let ctx = &new.contexts[name];
        assert_eq!(ctx.endpoints, like.endpoints);
        assert_eq!(ctx.ca, like.ca);
        assert_ne!(ctx.key, like.key);
        let described = describe(&new);
        assert!(
            described.starts_with("role os:reader, valid until "),
            "{described}"
        );

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("reader.cairnconfig");
        write(&new, &file, false).unwrap();
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(ClientConfig::load(&file).unwrap(), new);
        let e = write(&new, &file, false).unwrap_err();
        assert!(
            format!("{e:#}").contains("already exists (use --force"),
            "{e:#}"
        );
        write(&new, &file, true).unwrap();

        // The node refuses what the signing function refuses.
        let mut bad = request(&args(&["os:reader"], "24h"));
        bad.roles = vec!["os:impersonator".into()];
        let e = c.generate_client_configuration(bad).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().starts_with("unknown role"), "{}", e.message());
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_refused() {
        let ca = config::pki::create_os_ca().unwrap();
        let a = config::pki::issue_client_cert(
            &ca,
            "a",
            Role::Reader,
            config::pki::DEFAULT_ROLE_CERT_TTL,
        )
        .unwrap();
        let b = config::pki::issue_client_cert(
            &ca,
            "b",
            Role::Reader,
            config::pki::DEFAULT_ROLE_CERT_TTL,
        )
        .unwrap();
        let like = Context {
            endpoints: vec!["10.5.0.2".into()],
            nodes: vec![],
            ca: ca.crt.clone(),
            crt: a.crt.clone(),
            key: a.key.clone(),
        };
        let answer = GenerateClientConfigurationResponse {
            ca: ca.crt.pem().into(),
            crt: a.crt.pem().into(),
            key: b.key.pem().into(),
        };
        let e = client_config("lab", &like, &answer)
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not belong"), "{e}");
    }
}
