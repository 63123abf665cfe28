"""Authors and their books, published over DDP by ``bookstore/ddp.py``."""
