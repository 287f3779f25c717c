//! Run with: `cargo run --example forward` (with `ackbar serve` listening
//! on its default address, e.g. `cargo run -- serve --config config.example.json`)
//!
//! A service installing the `tracing` Layer in forwarding mode: its errors
//! go to the ackbar server at `http://127.0.0.1:9094` as OTLP/HTTP logs and
//! become cards there; its other events only go to its own `fmt` output.

use tracing::level_filters::LevelFilter;
use tracing_subscriber::prelude::*;

fn main() -> Result<(), ackbar::LayerError> {
    let (ackbar_layer, guard) = ackbar::layer()
        .service_name("checkout")
        .label_fields(["tenant"])
        .span_label_fields(["order"])
        .forward("http://127.0.0.1:9094")?;
    tracing_subscriber::registry()
        // The host's own output at INFO: the layer's worker (its HTTP
        // client) logs at DEBUG and TRACE, like any library.
        .with(tracing_subscriber::fmt::layer().with_filter(LevelFilter::INFO))
        .with(ackbar_layer)
        .init();

    tracing::info!("checkout service started");
    for order in [7, 8] {
        let span = tracing::info_span!("checkout", order);
        let _entered = span.enter();
        tracing::error!(tenant = "acme", card = "visa", "payment failed");
    }
    tracing::warn!("warnings stay local at the default level");

    // Dropping the guard flushes: the errors above are sent before it returns
    // (or the flush deadline passes, when the server is not there).
    drop(guard);
    Ok(())
}
