"""MLflow's Tracking UI from the installed ``mlflow`` package, and the endpoints only it calls."""
