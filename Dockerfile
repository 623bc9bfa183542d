# Container recipe for Homing. Not built or tested in this project's CI (no container engine
# runs on our machines); see docs/deployment.md.
FROM python:3.12-slim
RUN useradd --system --home /var/lib/homing homing && mkdir -p /var/lib/homing \
    && chown homing /var/lib/homing
WORKDIR /opt/homing
COPY pyproject.toml README.md ./
COPY homing ./homing
RUN pip install --no-cache-dir .
USER homing
ENV HOMING_DATA_DIR=/var/lib/homing HOMING_HOST=0.0.0.0 HOMING_PORT=8080
EXPOSE 8080
VOLUME ["/var/lib/homing"]
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/readyz').status != 200)"
ENTRYPOINT ["homing", "serve"]
