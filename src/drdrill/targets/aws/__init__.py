"""The AWS target: boto3 adapters, one module a service, and the safety guards."""
