"""The sandbox as an AWS API endpoint: moto for the protocol and state, the sandbox
for the data plane."""
