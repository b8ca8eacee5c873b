"""Each stage on its own, without Airflow: real files, real GX and TensorFlow where the stage uses them."""
