# tollgate: multi-stage build. The build stage runs the same `cargo build --locked` as CI;
# the runtime image holds only the binary, its default config and CA certificates.

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits do not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked && rm -rf src
COPY src ./src
RUN touch src/main.rs src/lib.rs && cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/tollgate --create-home tollgate
COPY --from=build /src/target/release/tollgate /usr/local/bin/tollgate
COPY config/tollgate.toml /etc/tollgate/tollgate.toml
COPY templates /usr/share/tollgate/templates
USER tollgate
WORKDIR /var/lib/tollgate
ENV TOLLGATE_LISTEN=0.0.0.0:8080 \
    TOLLGATE_DATABASE_URL=sqlite:///var/lib/tollgate/tollgate.db \
    TOLLGATE_LOG_FORMAT=json
EXPOSE 8080
# `tollgate healthcheck` reads the same configuration and GETs /healthz on the listen port.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["tollgate", "healthcheck", "--config", "/etc/tollgate/tollgate.toml"]
ENTRYPOINT ["tollgate"]
CMD ["serve", "--config", "/etc/tollgate/tollgate.toml"]
