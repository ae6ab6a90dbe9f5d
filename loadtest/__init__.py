"""Load for poolbench: Locust drives every arm with the same closed-loop users.

- `loadtest.target.load_target(path, stack)`: the outputs file as a typed `Target`.
- `loadtest.presets.resolve_scenario(...)` and `locust_command(...)`: a preset plus overrides,
  checked, and the exact headless Locust argv for a run folder.
- `loadtest/locustfile.py`: the users, the per-arm request budget, the ramp shape; it also runs
  on its own: `locust -f loadtest/locustfile.py --headless -u 200 -r 200 --outputs-file F`.
"""
