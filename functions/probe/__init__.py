"""The probe and the deploy-time role setup: small functions beside the database, never an arm."""
