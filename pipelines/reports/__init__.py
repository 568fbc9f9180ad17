"""Email reports: the admin daily report and the weekly parent emails.

``schedule`` says what is due, ``admin_data`` and ``family_data`` gather the
numbers from the warehouse, ``render`` turns them into a MIME message, and
``delivery`` claims, sends and records each email. Mail itself goes through
:mod:`pipelines.mail`; every write to PostgreSQL through :mod:`pipelines.writes`.
"""
