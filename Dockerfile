# syntax=docker/dockerfile:1
# Vestibule's image: built with the Rust toolchain, run as a non-root user on a small Debian base.
#
#   docker build -t vestibule:0.1.0 .

FROM rust:1-slim-bookworm AS builder
# aws-lc-rs builds C (and assembly) code.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Everything but what .dockerignore leaves out (target/, .git/).
COPY . .
RUN cargo build --release --locked --bin vestibule

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libcap2-bin \
 && rm -rf /var/lib/apt/lists/*
COPY --from=builder /src/target/release/vestibule /usr/local/bin/vestibule
# Bind ports 80 and 443 as a non-root user: the file capability works with the Deployment's
# `capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}`, as ingress-nginx's image does.
RUN setcap cap_net_bind_service=+ep /usr/local/bin/vestibule \
 && apt-get purge -y libcap2-bin && apt-get autoremove -y && rm -rf /var/lib/apt/lists/*
# A numeric user, so that Kubernetes can verify runAsNonRoot.
USER 65532:65532
EXPOSE 80 443 10254
ENTRYPOINT ["/usr/local/bin/vestibule"]
CMD ["controller"]
