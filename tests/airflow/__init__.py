"""The DAGs through real Airflow in this process: DagBag, `dag.test()`, `airflow dags test`."""
