# syntax=docker/dockerfile:1
# Build stage: dev dependencies and the TypeScript compiler.
FROM node:22-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY plugins ./plugins
COPY demo ./demo
RUN npm run build

# Run stage: production dependencies only, non-root, nothing written at run
# time (the files belong to root and are only read, so a read-only root
# filesystem works).
FROM node:22-bookworm-slim
ENV NODE_ENV=production
# The admin listener (metrics, /admin/*) must be reachable from outside the
# container to be of use; off loopback the gateway refuses to start without
# ADMIN_TOKEN. Set ADMIN_HOST=127.0.0.1 to keep it inside instead.
ENV ADMIN_HOST=0.0.0.0
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY config ./config
COPY routes ./routes
# The image's `node` user, by number, so Kubernetes' runAsNonRoot can verify it.
USER 1000:1000
# TLS: mount the certificate and key read-only (a Kubernetes Secret, or
# `-v "$PWD/certs:/app/tls:ro"`) and set server.tls in the config, e.g.
#   server: { port: 8443, tls: { cert: ../tls/tls.crt, key: ../tls/tls.key }, http2: true, redirectHttpPort: 8080 }
# then set HEALTH_URL=https://127.0.0.1:8443/healthz. Nothing is written there.
EXPOSE 8080 8443 9090
# http:// or https:// (the check does not verify the certificate: it asks its own process).
ENV HEALTH_URL=""
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD node -e "const u=new URL(process.env.HEALTH_URL||'http://127.0.0.1:'+(process.env.PORT||8080)+'/healthz');require(u.protocol==='https:'?'node:https':'node:http').get(u,{rejectUnauthorized:false},r=>process.exit(r.statusCode===200?0:1)).on('error',()=>process.exit(1))"
ENTRYPOINT ["node", "dist/src/main/cli.js"]
CMD ["start"]
