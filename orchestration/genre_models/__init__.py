"""The "Genre models" page of the Airflow UI: an Airflow 3 plugin (`plugin.py`) mounting a FastAPI app
(`app.py`) at /genre-models, with a navigation entry; `cdn.py` serves GX Data Docs without internet."""
