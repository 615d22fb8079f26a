"""MLflow's artifact proxy (``mlflow-artifacts``) over a local folder or S3."""
