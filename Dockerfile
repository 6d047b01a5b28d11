# One image for the server and the collector (docker-compose.yml picks the command).
# Debian 12 like the hosts: BCC's Python bindings come from Debian, not PyPI.
FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 python3-venv python3-dev gcc python3-bpfcc bpfcc-tools libbpfcc linux-headers-amd64 curl ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY . /app
# --system-site-packages exposes Debian's bcc module; bpf/, web/ and migrations/ are read from /app.
RUN python3 -m venv --system-site-packages /opt/hotpath \
 && /opt/hotpath/bin/pip install --no-cache-dir -e /app
ENV PATH=/opt/hotpath/bin:$PATH
EXPOSE 4040
CMD ["hotpath", "--help"]
