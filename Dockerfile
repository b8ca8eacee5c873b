# The project image for every Airflow container of docker-compose.yaml: the official Airflow image,
# this project's pinned requirements, and the project itself (packages `tasks` and `orchestration`).
#
#   docker-compose build          # or: docker build -t movie-genre-retrain-airflow .
#
# The DAGs and the project's code are copied in, so the image runs on its own; docker-compose.yaml also
# mounts dags/, tasks/, orchestration/ and expectations/ over the copies for development.
ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11
FROM ${AIRFLOW_IMAGE}

# Keep Airflow at the image's version whatever the requirements pull in.
ARG AIRFLOW_VERSION=3.3.2
ENV PROJECT_DIR=/opt/airflow/project
# Created by the airflow user, so that the editable install below can write its metadata there.
RUN mkdir -p "${PROJECT_DIR}"

COPY --chown=airflow:0 requirements.txt ${PROJECT_DIR}/requirements.txt
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r "${PROJECT_DIR}/requirements.txt"

COPY --chown=airflow:0 pyproject.toml ${PROJECT_DIR}/pyproject.toml
COPY --chown=airflow:0 tasks/ ${PROJECT_DIR}/tasks/
COPY --chown=airflow:0 orchestration/ ${PROJECT_DIR}/orchestration/
COPY --chown=airflow:0 expectations/ ${PROJECT_DIR}/expectations/
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
# Editable: `tasks` and `orchestration` import from ${PROJECT_DIR}, where compose mounts the live code.
RUN pip install --no-cache-dir --no-deps -e "${PROJECT_DIR}" \
    && python -c "import orchestration.wiring, tasks.config"

ENV GENRE_MODEL_DIR=/opt/airflow/models \
    GENRE_ARTIFACTS_DIR=/opt/airflow/artifacts \
    GENRE_DATA_ROOT=/opt/airflow/data \
    GX_ANALYTICS_ENABLED=false \
    TF_USE_LEGACY_KERAS=1 \
    TF_CPP_MIN_LOG_LEVEL=1
