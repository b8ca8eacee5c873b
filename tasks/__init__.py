"""The retraining pipeline's stages as plain functions: no Airflow needed to run or test them."""
