# Hello in Python: warden run examples/hello.py
print("hello from Python")
