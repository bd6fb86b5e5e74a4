//! The Web UI in a real headless Chromium, driven over WebDriver (Debian's
//! `chromium` and `chromedriver`, through fantoccini): what a user sees and
//! clicks, not what the server renders. For tests (feature `browser`): this
//! crate's own against a host API server, and the Kubernetes VM test's
//! against the add-on in a cluster. It knows this UI's sign-in form.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Why a browser check cannot run here, if it cannot.
pub fn missing() -> Option<String> {
    [CHROMIUM, CHROMEDRIVER]
        .iter()
        .find(|p| !Path::new(p).exists())
        .map(|p| format!("{p} is not installed (images/install-deps.sh installs it)"))
}

/// chromedriver and one browser session; both end when this is dropped.
pub struct Browser {
    pub client: Client,
    driver: Child,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// The session's WebDriver calls (find, execute, screenshot, ...).
impl std::ops::Deref for Browser {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Browser {
    /// Starts chromedriver and a headless Chromium at 1280×800 that accepts
    /// the server's certificate (the cluster CA is not the host's), with
    /// its profile and chromedriver's log in `dir`.
    pub async fn start(dir: &Path) -> anyhow::Result<Browser> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = dir.join("chromedriver.log");
        let out = std::fs::File::create(&log)?;
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(out.try_clone()?)
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .context("starting chromedriver")?;
        let mut caps = serde_json::Map::new();
        caps.insert("acceptInsecureCerts".into(), json!(true));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--disable-dev-shm-usage", "--window-size=1280,800",
                    format!("--user-data-dir={}", dir.join("chromium").display())]
            }),
        );
        let by = Instant::now() + Duration::from_secs(60);
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(c) => break c,
                Err(e) if Instant::now() > by => {
                    let log = std::fs::read_to_string(&log).unwrap_or_default();
                    return Err(anyhow!("chromedriver gave no session: {e}\n{log}"));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        };
        Ok(Browser { client, driver })
    }

    /// Ends the session (the drop ends chromedriver).
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }

    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.client
            .goto(url)
            .await
            .with_context(|| format!("opening {url}"))
    }

    /// The element `loc` once it is on the page (30 s at most); on a time
    /// out the error carries the page's address and text.
    pub async fn find_wait(&self, loc: Locator<'_>) -> anyhow::Result<Element> {
        match self
            .client
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(loc)
            .await
        {
            Ok(e) => Ok(e),
            Err(e) => Err(anyhow!("{loc:?} not found ({e}):\n{}", self.page().await)),
        }
    }

    /// Waits until the browser is at an address `wanted` accepts (a form
    /// sent by a click navigates after the click returns).
    pub async fn wait_for_url(
        &self,
        what: &str,
        wanted: impl Fn(&str) -> bool,
    ) -> anyhow::Result<()> {
        let by = Instant::now() + Duration::from_secs(30);
        loop {
            let url = self.client.current_url().await?;
            if wanted(url.as_str()) {
                return Ok(());
            }
            if Instant::now() > by {
                return Err(anyhow!("{what}: still at {url} after 30 s"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The current address and the page's text, for errors.
    pub async fn page(&self) -> String {
        let url = self
            .client
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_default();
        let body = match self.client.find(Locator::Css("body")).await {
            Ok(b) => b.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        format!("{url}\n{body}")
    }

    /// The text of the element `css` once it is on the page.
    pub async fn text(&self, css: &str) -> anyhow::Result<String> {
        Ok(self.find_wait(Locator::Css(css)).await?.text().await?)
    }

    /// Signs in to the Web UI at `base` with a bearer token.
    pub async fn sign_in(&self, base: &str, token: &str) -> anyhow::Result<()> {
        self.goto(&format!("{base}/login")).await?;
        self.find_wait(Locator::Id("token"))
            .await?
            .send_keys(token)
            .await?;
        self.client
            .find(Locator::Id("sign-in"))
            .await?
            .click()
            .await?;
        self.find_wait(Locator::Css("nav .user"))
            .await
            .context("signed in")?;
        Ok(())
    }

    pub async fn sign_out(&self) -> anyhow::Result<()> {
        self.client
            .find(Locator::Css("nav form button"))
            .await?
            .click()
            .await?;
        self.find_wait(Locator::Id("token")).await?;
        Ok(())
    }

    /// Saves the page as `dir/name` (PNG) and says where.
    pub async fn screenshot(&self, dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
        let png = self.client.screenshot().await?;
        let path = dir.join(name);
        std::fs::write(&path, png).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("screenshot: {}", path.display());
        Ok(path)
    }
}
