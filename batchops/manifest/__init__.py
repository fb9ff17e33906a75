"""batchops.manifest"""
