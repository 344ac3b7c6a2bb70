"""IADBE Gradio app: `python app.py` (a Hugging Face Space runs this file)."""

from iadbe.app import launch

if __name__ == "__main__":
    launch()
