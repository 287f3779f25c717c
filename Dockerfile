# syntax=docker/dockerfile:1
#
# ackbar in a small, non-root image:
#
#   docker build -t ackbar .
#   docker run --rm -p 9094:9094 ackbar          # sandbox mode: open http://127.0.0.1:9094/sandbox/
#   docker run --rm -p 9094:9094 -v $PWD/ackbar.json:/etc/ackbar/config.json:ro \
#     -v ackbar-data:/var/lib/ackbar ackbar
#
# The build stage compiles only the binary with the default features; the
# registry and target directories are BuildKit cache mounts, so a rebuild
# after a source change does not fetch or compile the dependencies again.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin ackbar \
    && install -D -m 0755 target/release/ackbar /out/ackbar

FROM debian:bookworm-slim
# CA certificates for https://slack.com; nothing else is needed at run time
# (rustls, SQLite compiled in).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/ackbar --create-home ackbar
COPY --from=build /out/ackbar /usr/local/bin/ackbar
COPY packaging/container-config.json /etc/ackbar/config.json
USER 10001:10001
WORKDIR /var/lib/ackbar
VOLUME ["/var/lib/ackbar"]
EXPOSE 9094
# /healthz answers without touching the store; use /readyz for readiness.
ENTRYPOINT ["/usr/local/bin/ackbar"]
CMD ["serve", "--config", "/etc/ackbar/config.json"]
