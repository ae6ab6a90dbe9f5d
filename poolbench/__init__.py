"""poolbench: does an in-environment PgBouncer make RDS Proxy unnecessary on Managed Instances?"""

__version__ = "0.1.0"
