"""Benchmarks of runstream, side by side with a real MLflow server: ``python -m bench``.

One harness for every workload:

- ``harness``: the only place servers are started: ``runstream server`` (on a dedicated
  Redis with AOF persistence, as deployed), ``mlflow server``, the null server, each on a
  fresh PostgreSQL database where it has one; the same warm-up for both tracking servers.
- ``report``: the one result type (``Result``), its JSON line, the one JSON writer
  (``bench/results/<date>.json``) and the one markdown renderer (``docs/benchmarks.md``);
  ``Context``, what every workload gets.
- Workloads, each module exposing ``WORKLOADS: dict[str, Callable[[Context], list[Result]]]``:
  ``write_workloads`` (native SDK, ingest, end to end; MLflow's async logging and Ray's
  callback), ``mlflow_protocol`` (issue 12: the mlflow client against runstream, MLflow's
  server and the null server), ``read_workloads`` (the read path), ``storage`` (bytes per
  point, everything counted), ``mlflow_proof`` (the compatibility suite, opt-in).
- Helpers: ``loaders`` (data COPYed straight into either server's schema), ``processes``
  (client processes), ``ingest_throughput`` (a raw ingest driver), ``null_server``.
"""
