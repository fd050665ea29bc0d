# gatehouse: multi-stage build. Stage 1 compiles TypeScript; stage 2 holds production dependencies and dist/ only.
FROM node:22-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY src ./src
RUN npx tsc -p tsconfig.build.json

FROM node:22-bookworm-slim AS runtime
ENV NODE_ENV=production \
    GATEHOUSE_HOST=0.0.0.0
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
RUN chmod +x /app/dist/cli.js && ln -s /app/dist/cli.js /usr/local/bin/gatehouse && mkdir -p /etc/gatehouse
# Mount your config at /etc/gatehouse/gatehouse.yaml (no config is baked in: the example's demo keys must never ship).
USER node
EXPOSE 8080 9901
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:9901/healthz').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["gatehouse", "serve", "--config", "/etc/gatehouse/gatehouse.yaml"]
