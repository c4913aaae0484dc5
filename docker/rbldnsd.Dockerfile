# rbldnsd from Debian's package, serving the blocklist the portal's worker exports (README,
# "Running with docker compose"). Built by docker-compose.yml with this folder as the context.
FROM debian:bookworm-slim
# Debian's current rbldnsd, with its security updates, rather than a pinned build that goes stale.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends rbldnsd \
    && rm -rf /var/lib/apt/lists/*
COPY --chmod=0755 rbldnsd-start /usr/local/bin/rbldnsd-start
# UDP only: rbldnsd answers no DNS over TCP.
EXPOSE 530/udp
# Starts as root to bind, then rbldnsd itself drops to the rbldns user.
CMD ["rbldnsd-start"]
