"""The staff support console (``/staff/``): roles, look-up, the account page, actions, the audit log.

roles.py (who may do what; the 404 gate), services.py (every staff action: reason mandatory,
an audit entry in the same transaction, once per form token), selectors.py (search and the
account page, built from the selectors the user's own pages use), views.py + urls.py (pages).
"""
