"""Lesson (stub)."""
import streamlit as st

from app import state

st.title("Lesson")
state.sidebar()
