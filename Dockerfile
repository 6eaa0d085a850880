# Meshlet sidecar image. Node 24 runs the TypeScript sources directly (type stripping): no build step.
#   docker build -t meshlet .
#   docker run -v $PWD/conf:/etc/meshlet meshlet            # conf/ holds meshlet.yaml (and its catalog)
FROM node:24-slim

ENV NODE_ENV=production
WORKDIR /opt/meshlet

# Dependencies first, so source edits do not invalidate this layer.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

COPY . .
# A default config (the README's example); mount your own directory over /etc/meshlet.
RUN mkdir -p /etc/meshlet && cp examples/meshlet.yaml examples/catalog.yaml /etc/meshlet/

# The official image's unprivileged user (uid 1000); the sidecar needs no root (ports >= 1024).
USER node

# Inbound listener (peers call it). The admin API stays on 127.0.0.1:15000 inside the pod/container.
EXPOSE 15001
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s CMD ["node", "/opt/meshlet/bin/meshlet.js", "wait-ready", "--timeout", "2s"]

# The launcher turns on Node's compile cache (in /tmp): later starts skip the TypeScript transform and
# use less memory; --expose-gc lets `trimMemory` give idle memory back. injector/spec.ts IMAGE_CLI must
# name the same command (a test checks).
ENTRYPOINT ["node", "--expose-gc", "/opt/meshlet/bin/meshlet.js"]
CMD ["sidecar", "--config", "/etc/meshlet/meshlet.yaml"]
