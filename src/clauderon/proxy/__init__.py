"""The credential proxy: containers hold placeholders, the proxy holds the secrets.

`server.CredentialProxy` runs mitmproxy inside the daemon; `addon.SessionProxy` decides
each request with `policy` (egress, access mode, injection rules), takes secrets from
`credentials`, and writes `audit`. `ca` makes the certificate authority containers trust.
"""
