"""Bring your own data: public trace sets and local files in, detected by layout. See README, Bring your own data."""
