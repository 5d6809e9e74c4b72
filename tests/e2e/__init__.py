"""End to end: botwatch + real Prometheus + real Alertmanager, faults in, pages out.

stack.py starts the stack (shared by the test, `bench/alert_latency.py` and `make demo`),
sims.py is the simulated Trader Bot and AlphaEngine network side, faults.py the faults and
the alerts each one must page with.
"""
