import os
import sys

# dense_reference and the CPU kernel emulator are test-only modules that live beside the tests.
sys.path.insert(0, os.path.dirname(__file__))
