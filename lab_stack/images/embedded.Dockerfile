# The embedded Loki, Tempo, log shipper, notification sinks and GPU source on a Debian Python base.
# Built by `lab images build` (FROM the debootstrap base it imports); pulls nothing from a registry.
ARG BASE=localhost/lab/python-base:bookworm
FROM ${BASE}
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY requirements.txt /opt/requirements.txt
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir -r /opt/requirements.txt
COPY src/ /opt/workbook/
ENV PYTHONPATH=/opt/workbook PATH=/opt/venv/bin:/usr/local/bin:/usr/bin:/bin
WORKDIR /var/lib/lab
