# syntax=docker/dockerfile:1
# pgwake: `docker build -t pgwake .` then `docker run -e DATABASE_URL=… pgwake worker`.
# compose.yaml runs the whole stack (Postgres, migrate, api, scaled workers).

# ---- build: the compiled package (dist/), as `npm pack` makes it ---------------------------------
FROM node:24-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --omit=optional --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# ---- deps: production dependencies only --------------------------------------------------------
FROM node:24-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# --omit=optional leaves out the embedded Postgres binaries (about 60 MB): a container always gets
# DATABASE_URL. --omit=dev keeps the test, lint and bench tooling out of the image.
RUN npm ci --omit=dev --omit=optional --no-audit --no-fund \
 && npm cache clean --force

# ---- runtime ----------------------------------------------------------------------------------
FROM node:24-slim AS runtime
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=3000 \
    PGWAKE_LOG_FORMAT=json
WORKDIR /app
COPY --from=deps --chown=root:root /app/node_modules ./node_modules
COPY --chown=root:root package.json LICENSE ./
COPY --chown=root:root bin/pgwake.js ./bin/pgwake.js
COPY --chown=root:root db/migrations ./db/migrations
COPY --from=build --chown=root:root /src/dist ./dist
# Code owned by root, process run as the image's unprivileged `node` user: it cannot modify itself.
USER node
EXPOSE 3000
# The compiled JavaScript (no src/ in the image: bin/pgwake.js runs dist/).
ENTRYPOINT ["node", "bin/pgwake.js"]
CMD ["start"]
