"""batchops.api"""
