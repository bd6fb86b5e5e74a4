//! Controllers: long-running tasks that read their inputs (the kernel, the
//! supervisor, other resources) and keep their outputs in the store
//! current. Each declares both; the store lets a controller write only
//! its outputs.

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;

use super::{Kind, Store, StoreError, Writer};

/// Something a controller reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// Resources of a type in the store.
    Resource(&'static Kind),
    /// Something outside the store, e.g. `rtnetlink` or `/proc/self/mountinfo`.
    External(&'static str),
}

impl fmt::Display for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Input::Resource(k) => f.write_str(k.name),
            Input::External(s) => f.write_str(s),
        }
    }
}

pub trait Controller: Send + 'static {
    fn name(&self) -> &'static str;
    fn inputs(&self) -> Vec<Input>;
    fn outputs(&self) -> Vec<&'static Kind>;
    /// Runs for as long as machined does, writing through `writer`.
    fn run(self: Box<Self>, writer: Writer) -> BoxFuture<'static, ()>;
}

/// Registers a controller's outputs and starts it.
pub fn spawn(
    store: &Arc<Store>,
    controller: impl Controller,
) -> Result<tokio::task::JoinHandle<()>, StoreError> {
    let outputs = controller.outputs();
    let writer = store.writer(controller.name(), &outputs)?;
    let list = |v: Vec<String>| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    tracing::debug!(
        controller = controller.name(),
        inputs = %list(controller.inputs().iter().map(ToString::to_string).collect()),
        outputs = %list(outputs.iter().map(|k| k.name.to_string()).collect()),
        "starting controller"
    );
    Ok(tokio::spawn(Box::new(controller).run(writer)))
}
