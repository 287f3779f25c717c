//! A small service whose errors become Slack cards, with no other process to
//! run: the Bridge runs ackbar in-process and, without a bot token, posts to
//! its own Slack emulator.
//!
//! ```text
//! cargo run --example embedded
//! ```
//!
//! It prints where the emulator's state is, fails a few "payments" (one card
//! counting them), hits one other error (a second card), then waits so you
//! can look before the guard flushes and stops the bridge.

use std::time::Duration;

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::prelude::*;

#[tracing::instrument]
fn charge(order: u32) -> Result<(), String> {
    if order.is_multiple_of(3) {
        let reason = "card declined";
        tracing::error!(order, reason, "payment failed");
        return Err(reason.to_owned());
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bridge = ackbar::Bridge::builder()
        .quiet_period(Duration::from_secs(120))
        .build()?;
    println!("cards: {}/sandbox/api/state", bridge.url());

    let (layer, guard) = ackbar::layer()
        .service_name("shop")
        .span_label_fields(["order"])
        .build_with(bridge)?;
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_filter(LevelFilter::INFO))
        .with(layer)
        .init();

    for order in 0..30 {
        let _ = charge(order);
    }
    tracing::error!(table = "stock", "inventory query timed out");

    std::thread::sleep(Duration::from_secs(10));
    drop(guard);
    Ok(())
}
