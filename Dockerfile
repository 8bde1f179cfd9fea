# The receiver image: `docker compose up` starts it against PostgreSQL.
FROM python:3.11-slim

WORKDIR /opt/csm-receiver
COPY pyproject.toml README.md ./
COPY csm_wire ./csm_wire
COPY receiver ./receiver
COPY guest_lsm ./guest_lsm
COPY bench ./bench
COPY migrations ./migrations
COPY proto ./proto
# Root inside the container: /dev/vsock and the VMMs' sockets need it.
RUN pip install --no-cache-dir -e . && mkdir -p /var/lib/csm

ENV CSM_DATA_DIR=/var/lib/csm \
    CSM_API=0.0.0.0:8080
VOLUME ["/var/lib/csm"]
EXPOSE 8080
ENTRYPOINT ["csm-receiver", "serve"]
