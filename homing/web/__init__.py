"""HTTP request and response pieces shared by the API and the console: reading bodies and
query filters, and the JSON shapes of the wire API (the console shows them too)."""
