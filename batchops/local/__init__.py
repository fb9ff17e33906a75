"""batchops.local"""
