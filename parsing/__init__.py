"""Bytes in, a frozen `ParsedMail` out (`parsing.message.parse`). Parsing never raises on bad mail:
problems are recorded as defects, and only a mail that cannot be read at all is refused."""
