# The stedi image: the package and its CLI, with the sample data, running the demo by default.
# Alone it keeps the warehouse in /lakehouse (the embedded default); docker-compose.yml points it at
# MinIO and PostgreSQL through STEDI_WAREHOUSE, STEDI_CATALOG_URI and the AWS_* variables.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY stedi ./stedi
COPY pipelines ./pipelines
COPY catalog ./catalog
COPY sample_data ./sample_data
RUN pip install --no-cache-dir . \
 && useradd --create-home stedi \
 && mkdir /lakehouse && chown stedi /lakehouse
USER stedi
ENV STEDI_WAREHOUSE=/lakehouse
VOLUME ["/lakehouse"]
CMD ["sh", "-c", "stedi-etl ingest sample_data && stedi-etl run && stedi-etl tables"]
