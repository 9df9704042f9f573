# syntax=docker/dockerfile:1

# Build stage. Debian, not Alpine: the SQLite driver (mattn/go-sqlite3) is cgo,
# and the binary must link the same glibc as the runtime image below.
FROM golang:1.26-bookworm AS build
WORKDIR /src
# Modules get their own layer so that a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ENV CGO_ENABLED=1
RUN --mount=type=cache,target=/root/.cache/go-build go build -trimpath -ldflags="-s -w" -o /out/latchkey ./cmd/latchkey
# distroless has no shell to mkdir with, so the data directory is made here
# and copied over with its owner set.
RUN mkdir -p /out/data

# Runtime stage: glibc and CA certificates, no shell, no package manager.
# debian12 is bookworm, the glibc the binary was linked against.
FROM gcr.io/distroless/base-debian12:nonroot
COPY --from=build /out/latchkey /usr/local/bin/latchkey
COPY --from=build --chown=65532:65532 /out/data /data
# Numeric, so that Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532
# The default database, sqlite://latchkey.db, and its generated secret land
# here: a single container runs as is, and a volume on /data keeps them.
WORKDIR /data
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/latchkey"]
CMD ["serve"]
