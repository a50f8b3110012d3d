# querygate: one image for both services; the command picks which.
#   query-grpc:  docker run IMAGE --max-semi-space-size=8 --no-allocation-site-pretenuring \
#                  dist/services/query-grpc/src/main.js
#                (its node flags: services/query-grpc/src/node-flags.ts)
#   http-bridge: docker run IMAGE            (the default CMD, with its node flags:
#                services/http-bridge/src/node-flags.ts)
# ENTRYPOINT is node itself (exec form, no npm, no shell), so SIGTERM reaches
# the service, which drains and exits 0.
#
# deploy/dockerfile.test.ts performs these steps outside Docker (every stage in
# a temp directory, RUN through the host's shell) and starts the bridge from
# the result: keep to FROM/ARG/WORKDIR/COPY/RUN/ENV/USER/EXPOSE/LABEL/
# ENTRYPOINT/CMD, and to RUN steps that need only node and npm.
ARG NODE_IMAGE=node:20-bookworm-slim

# ---- build: every dependency, then tsc -> dist/ ----
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
# .dockerignore lets through only what the build reads.
COPY . .
RUN npm run build

# ---- deps: production dependencies only ----
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

# ---- runtime ----
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
# Owned by root and not writable by the service user: the code is immutable at
# run time (and Kubernetes mounts the root filesystem read-only on top).
COPY package.json ./
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/proto/gen ./proto/gen
# Numeric, so Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 10001:10001
# http-bridge 5000; query-grpc gRPC 50051 and metrics 9464.
EXPOSE 5000 50051 9464
ENTRYPOINT ["node"]
CMD ["--max-semi-space-size=8", "--no-allocation-site-pretenuring", "dist/services/http-bridge/src/main.js"]
