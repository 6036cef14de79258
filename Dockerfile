# One image for operator, ingest and forwarder: `tally operator|ingest|forwarder …`.
# Build: docker build -t tally:dev .   (no Docker engine runs in Tally's CI; see README "kind")
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY cli cli
COPY core core
COPY operator operator
COPY ingest ingest
COPY forwarder forwarder
COPY bench bench
COPY test/env test/env
COPY crds crds
COPY examples examples
RUN npm run build && npm prune --omit=dev --ignore-scripts

FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules node_modules
COPY --from=build /app/dist dist
COPY --from=build /app/crds crds
# The image runs as an unprivileged user and needs no writable root filesystem: in a cluster the
# database is always DATABASE_URL (the embedded PostgreSQL is for laptops).
USER 65532:65532
ENTRYPOINT ["node", "/app/dist/cli/tally.js"]
CMD ["--help"]
