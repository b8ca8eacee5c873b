"""Airflow glue shared by the DAG files: imported by `dags/`, never by `tasks/` (which runs without Airflow)."""
