"""`supportd demo` and what it runs on: servers embedded in the process and realistic sample mails
(the tests and benchmarks use the same)."""
