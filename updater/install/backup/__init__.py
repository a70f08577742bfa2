"""The zip backup of an install's program files: written before a build is applied, restored
after a failure. Standard zips, Deflate by ISA-L where it is available.
"""
