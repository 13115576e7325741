"""The RAPID graph inside LangChain agents: as a tool, and as a subgraph node."""

from __future__ import annotations

import asyncio
import base64
import io

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from rapid_agent import RapidContext, as_tool, build_rapid_graph
from rapid_agent.testing import ToolCallingScriptedModel, echo_captioner, fact_reasoner


def b64_png(image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def rapid_graph():
    return build_rapid_graph(echo_captioner("three red circles on white"), fact_reasoner({"three red circles": "3"}))


def test_agent_calls_the_tool_and_gets_the_answer_back(circles_image, tmp_path):
    path = tmp_path / "circles.png"
    circles_image.save(path)
    tool = as_tool(rapid_graph())
    agent_model = ToolCallingScriptedModel(
        script=[
            AIMessage(
                content="",
                tool_calls=[{"name": "look_and_reason", "args": {"image": str(path), "question": "How many circles?"}, "id": "call_1"}],
            ),
            "There are 3 circles.",
        ]
    )
    agent = create_agent(model=agent_model, tools=[tool])
    result = agent.invoke({"messages": [HumanMessage("How many circles are in circles.png?")]})

    tool_message = next(m for m in result["messages"] if isinstance(m, ToolMessage))
    assert tool_message.content.startswith("Answer: 3")
    assert "three red circles" in tool_message.content
    assert agent_model.bound_tool_names == ["look_and_reason"]
    assert result["messages"][-1].content == "There are 3 circles."
    # the agent's second turn saw the tool's answer
    assert any(isinstance(m, ToolMessage) and "Answer: 3" in m.content for m in agent_model.calls[1])


def test_tool_runs_async_with_base64_images_and_a_pinned_context(circles_image):
    other = fact_reasoner({"three red circles": "three"})
    tool = as_tool(rapid_graph(), context=RapidContext(reasoner=other))
    out = asyncio.run(tool.ainvoke({"image": b64_png(circles_image), "question": "How many?", "options": ["2", "3"]}))
    assert out.startswith("Answer: three")
    assert len(other.calls) == 1
    assert "A. 2\nB. 3" in other.calls[0][-1].content
    assert tool.args_schema.model_json_schema()["required"] == ["image", "question"]


def test_tool_reports_when_no_answer_was_found(circles_image):
    graph = build_rapid_graph(echo_captioner("a blank page"), fact_reasoner({"circles": "3"}))
    out = as_tool(graph).invoke({"image": b64_png(circles_image), "question": "How many?"})
    assert out.startswith("No definite answer")


class Inspection(TypedDict, total=False):
    question: str
    images: list
    answer: str | None
    captions: list[str]
    report: str


def test_parent_graph_runs_the_rapid_graph_as_a_node(circles_image):
    def write_report(state: Inspection) -> dict:
        return {"report": f"{state['question']} -> {state['answer']} (seen: {state['captions'][0]})"}

    parent = StateGraph(Inspection)
    parent.add_node("look", rapid_graph())
    parent.add_node("report", write_report)
    parent.add_edge(START, "look")
    parent.add_edge("look", "report")
    parent.add_edge("report", END)
    result = parent.compile().invoke({"question": "How many circles?", "images": [circles_image]})

    assert result["answer"] == "3"
    assert result["report"] == "How many circles? -> 3 (seen: three red circles on white)"
