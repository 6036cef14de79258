# One image for operator, ingest and forwarder: `tally operator|ingest|forwarder …`.
#   docker build -t tally:dev .
# Tally's CI has no Docker engine, so nothing builds this file there; scripts/kind-up.sh builds it for a
# kind cluster, and charts/tally/README.md describes both.

FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --ignore-scripts
# The whole tree (.dockerignore keeps node_modules, dist and local data out): tsconfig.build.json decides
# what compiles, so this file needs no change when a folder is added.
COPY . .
# Optional dependencies are the embedded PostgreSQL binaries (60 MB) and pg's Cloudflare socket: in a
# cluster the database is always DATABASE_URL.
RUN npm run build && npm prune --omit=dev --omit=optional --no-audit --no-fund

FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules node_modules
COPY --from=build /app/dist dist
# Unprivileged, and nothing is written to the root filesystem (the chart mounts it read-only).
USER 65532:65532
ENTRYPOINT ["node", "/app/dist/cli/tally.js"]
CMD ["--help"]
