"""Scale-out on a Ray cluster (`nexa serve --ray`, `pip install 'nexa[ray]'`).

Ray Serve places, scales and restarts; nexa adds no scheduler of its own. The ingress is the same
FastAPI app as `nexa serve` (nexa.cluster.ingress); each model is a Serve application whose replicas
each run the same worker process as a single machine does (nexa.cluster.replica). The router reaches a
replica through an httpx transport (nexa.cluster.transport), so the relay and every API dialect are
unchanged, and the ModelManager drives a deployment (nexa.cluster.deployment) as it drives a worker.
"""
