# The image of the pgferry Fargate tasks (tasks/registry.ts), built by `cdk deploy` for
# linux/arm64. One image for every task: the ENTRYPOINT is node, and each task definition's
# command names its bundle, e.g. ["dist/tasks/copy.mjs"].

# The bundles are plain JavaScript, so they are built natively on the build host whatever the
# target platform (no emulation).
FROM --platform=$BUILDPLATFORM node:22-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
# Production dependencies hold everything the tasks import, and esbuild (a dependency of tsx).
# The development ones are not needed, and some are x64-only PostgreSQL binaries that older npm
# versions still refuse on arm64 build hosts even when omitted (npm/cli#2921): --force skips
# that check for required packages only; optional ones (esbuild's binaries) are still chosen
# for the build platform.
RUN npm ci --omit=dev --ignore-scripts --force --no-audit --no-fund
COPY tsconfig.json ./
COPY engine ./engine
COPY platform ./platform
COPY tasks ./tasks
COPY infra/bundle-tasks.ts infra/esbuild-recipe.ts infra/task-image.ts ./infra/
# One self-contained ESM file per task (AWS SDK included): the image needs no node_modules.
RUN npx tsx infra/bundle-tasks.ts dist/tasks

FROM node:22-slim
WORKDIR /app
ENV NODE_OPTIONS=--enable-source-maps
COPY --from=build /src/dist/tasks ./dist/tasks
USER node
ENTRYPOINT ["node"]
