"""Placeholder while the page is being built."""

import streamlit as st

st.title("feature_maps")
st.info("This page is being built.")
