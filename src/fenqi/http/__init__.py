"""What the JSON API (``fenqi.api``) and the pages (``fenqi.web``) share over HTTP: problem
documents, credentials on a request, the security headers and hardening middleware, the fields
both read, and the app factory that puts them together. ``api`` and ``web`` import this
package, never each other."""
